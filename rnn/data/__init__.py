"""Data: text files (`text`), the vocabulary (`vocab`), a file's ids and their cache (`ids`), the corpus (`corpus`),
the text a run names read into one (`reading`), batches (`batches`)."""
