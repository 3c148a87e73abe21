"""vectorizer: vectorization-queue -> embeddings -> Qdrant (+ novel-errors, + vectorization-dlq)."""
