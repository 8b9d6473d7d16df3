"""HTTP routes of the simulator, one controller per resource."""
