"""Traffic analysis from NetFlow v5/v9 and IPFIX: decoding adapter, attribution, aggregation, UDP listener."""
