# Sourced by the scripts that build: compile through ccache when this machine has it (optional; nothing installs
# it), with paths made relative to the checkout so that another clone on the same machine reuses the cache.
cache_flags=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR="$PWD"
  cache_flags=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# Debug builds would otherwise hash the build directory into every entry, and no other clone could hit them.
[ ${#cache_flags[@]} -eq 0 ] || export CCACHE_NOHASHDIR=1
