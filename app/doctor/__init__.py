"""`llmgw doctor`: the path from here to the model, checked hop by hop (`run.main`)."""
