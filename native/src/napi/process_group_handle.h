// Exports of process_group_handle.cpp: distConnect() and ProcessGroupHandle.
#pragma once

#include <napi.h>

namespace bertkit {
void RegisterProcessGroup(Napi::Env env, Napi::Object exports);
}
