"""The promotion controller: render environments, promote graph locks, diff and apply clusters."""
