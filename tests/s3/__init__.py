"""Object storage round trips against a real S3-compatible server (moto) on 127.0.0.1."""
