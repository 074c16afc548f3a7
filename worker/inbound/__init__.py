"""The inbound pipeline: store -> crisis -> keyword -> match -> answer."""
