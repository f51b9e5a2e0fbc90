#pragma once
#include <napi.h>
namespace bertkit {
void RegisterOps(Napi::Env env, Napi::Object exports);
}
