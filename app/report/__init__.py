"""Reports for the owner from the gateway's metrics (`llmgw report`)."""
