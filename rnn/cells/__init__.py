"""The cell language: gate expressions (`expr`), the @cell declaration, the registry and the
built-in cells (`registry`)."""
