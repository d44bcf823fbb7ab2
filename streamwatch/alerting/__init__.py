"""From findings to delivered notifications: policy, routing, outbox, dispatcher."""
