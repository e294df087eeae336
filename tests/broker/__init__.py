"""Broker tier: virtq through private RabbitMQ nodes (AMQP 1.0 plugin) started by virtq.testing.rabbitmq."""
