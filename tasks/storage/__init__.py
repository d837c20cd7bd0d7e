"""Storage: the lake (local directory or S3 bucket) and the S3 object store beneath it."""
