# The flock addon (native/flock.c) for Data.fs.lock; built from source at install by scripts/build-native.mjs.
{
  "targets": [
    {
      "target_name": "zeo_flock",
      "sources": ["native/flock.c"],
      "cflags": ["-Wall", "-Wextra", "-std=c99", "-D_DEFAULT_SOURCE"],
      "xcode_settings": { "OTHER_CFLAGS": ["-Wall", "-Wextra"] }
    }
  ]
}
