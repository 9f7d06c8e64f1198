"""A directory app whose custom model lives in models/ (Python class beside its TypeScript file)."""
