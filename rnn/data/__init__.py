"""Data: text files, the corpus and its vocabulary, batches (`corpus`)."""
