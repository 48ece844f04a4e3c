"""Local provisioning: a real Kafka, redis-server and Ray nodes on this machine."""
