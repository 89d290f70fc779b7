"""The render loop, run folders, events and the resource budget."""
