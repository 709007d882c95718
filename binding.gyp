{
  "targets": [
    {
      "target_name": "uniroute",
      "sources": [
        "native/core/common.cpp",
        "native/core/isa.cpp",
        "native/core/kernels_baseline.cpp",
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
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } },
      "conditions": [
        ["target_arch=='x64' and OS!='win'", { "dependencies": ["uniroute_kernels_avx2", "uniroute_kernels_avx512"] },
         { "defines": ["UNIROUTE_NO_X86_VARIANTS"] }]
      ]
    },
    {
      "target_name": "uniroute_kernels_avx2",
      "type": "static_library",
      "sources": ["native/core/kernels_avx2.cpp"],
      "cflags_cc!": ["-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx2", "-mfma"],
      "xcode_settings": { "CLANG_CXX_LANGUAGE_STANDARD": "c++17", "OTHER_CPLUSPLUSFLAGS": ["-O3", "-mavx2", "-mfma"] }
    },
    {
      "target_name": "uniroute_kernels_avx512",
      "type": "static_library",
      "sources": ["native/core/kernels_avx512.cpp"],
      "cflags_cc!": ["-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma",
                    "-mprefer-vector-width=512"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"]
      }
    }
  ]
}
