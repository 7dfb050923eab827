"""The output folder in the formats of the field: a Hugging Face dataset, Lhotse manifests."""
