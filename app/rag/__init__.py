"""The model reads the owner's posts: the `search_posts` tool the gateway runs, and the
passages it hands the model, quoted as data (issue 19)."""
