"""Request and response models of the AIVO API. Each entity has a family: `...Create` for what a
client sends, `...Public` for what it gets back."""
