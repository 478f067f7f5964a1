"""PostgreSQL storage: pool and migrations, embedded server, batched writer, repositories, retention."""
