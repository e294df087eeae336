"""Broker tier: virtq through private RabbitMQ nodes (AMQP 1.0 plugin) started by tests/broker/harness.py."""
