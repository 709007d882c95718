{
  "targets": [
    {
      "target_name": "uniroute",
      "sources": [
        "native/core/common.cpp",
        "native/core/backend.cpp",
        "native/core/linalg.cpp",
        "native/core/embed.cpp",
        "native/core/assign.cpp",
        "native/core/kmeans.cpp",
        "native/core/score.cpp",
        "native/core/route.cpp",
        "native/core/mlp.cpp",
        "native/cuda/stub.cpp",
        "native/binding/addon.cpp",
        "native/binding/embed.cpp",
        "native/binding/route.cpp",
        "native/binding/cluster.cpp",
        "native/binding/mlp.cpp",
        "native/binding/backend.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
