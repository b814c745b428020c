// The witness (`tandem witness`), in three parts: the state file (witness_state.h), the decisions
// (witness_core.h, which states the rules) and the UDP server with the daemon loop (witness_server.h).
#pragma once

#include "heartbeat/witness_core.h"
#include "heartbeat/witness_server.h"
#include "heartbeat/witness_state.h"
