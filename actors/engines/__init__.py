"""The domain engines: orders, PSP routing, dunning and the PSP stats book. Pure: no Ray, Kafka or Redis."""
