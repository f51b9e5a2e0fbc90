// Exports of runtime_info.cpp: inspectRuntime() and setCudaLibraryDirs().
#pragma once

#include <napi.h>

namespace bertkit {
void RegisterRuntimeInfo(Napi::Env env, Napi::Object exports);
}
