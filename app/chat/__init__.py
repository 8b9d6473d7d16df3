"""The chat a visitor asks for: its validated body (`request`) and who sent it (`visitor`)."""
