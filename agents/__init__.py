"""AutoGen agents, their confined tools and the model clients they talk to."""
