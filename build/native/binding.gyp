{
  "targets": [
    {
      "target_name": "agent_native",
      "sources": ["agent_native.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
