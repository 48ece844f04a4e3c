"""The Locust load test: options, the locustfile, the run and its monitor process."""
