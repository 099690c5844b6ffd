{
  "targets": [
    {
      "target_name": "meshplane_p256",
      "sources": ["native/p256.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
