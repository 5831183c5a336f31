"""Run folders: safe file access inside one (`files`), the folder a run writes with its lock and
metrics (`folder`), and reading runs back (`reader`)."""
