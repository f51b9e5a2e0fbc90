{
  "targets": [
    {
      "target_name": "bertkit",
      "sources": [
        "native/src/napi/addon.cpp",
        "native/src/napi/native_buffer.cpp",
        "native/src/napi/op_args.cpp",
        "native/src/napi/ops.cpp",
        "native/src/napi/runtime_info.cpp",
        "native/src/napi/process_group_handle.cpp",
        "native/src/common/dispatch.cpp",
        "native/src/distributed/tcp_store.cpp",
        "native/src/distributed/process_group.cpp",
        "native/src/distributed/gloo_group.cpp",
        "<!@(node -p \"require('fs').readdirSync('native/src/cpu').filter(f => f.endsWith('.cpp')).map(f => 'native/src/cpu/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "native/include",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno"],
      "cflags!": ["-fno-exceptions"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}
