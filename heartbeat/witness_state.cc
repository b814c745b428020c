#include "heartbeat/witness_state.h"

#include <nlohmann/json.hpp>

#include "heartbeat/message.h"

namespace tandem::heartbeat {

Result<WitnessTable> LoadWitnessState(const std::string& path, Env* env) {
  auto text = env->ReadFile(path, 64u << 20);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound) return WitnessTable{};
    return text.status().WithContext("witness: state");
  }
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const char* why) { return Status::Corruption("witness: state " + path + ": " + why); };
  if (j.is_discarded() || !j.is_object()) return bad("not JSON");
  if (j.value("format", "") != "tandem-witness" || !j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int>() != 1) {
    return bad("not a tandem-witness version 1 file");
  }
  if (!j.contains("vms") || !j["vms"].is_object()) return bad("no vms object");
  WitnessTable table;
  for (const auto& [name, vm] : j["vms"].items()) {
    if (!ValidNodeName(name)) return bad("bad vm name");
    if (!vm.is_object() || !vm.contains("term") || !vm["term"].is_number_unsigned() || !vm.contains("holder") ||
        !vm["holder"].is_string()) {
      return bad("vm entry needs term (unsigned) and holder (string)");
    }
    PersistedVm p{vm["term"].get<uint64_t>(), vm["holder"].get<std::string>()};
    if (p.term == 0 || !ValidNodeName(p.holder)) return bad("vm entry with term 0 or a bad holder name");
    table.emplace(name, std::move(p));
  }
  return table;
}

Status SaveWitnessState(const std::string& path, const WitnessTable& table, Env* env) {
  nlohmann::json vms = nlohmann::json::object();
  for (const auto& [name, vm] : table) vms[name] = {{"term", vm.term}, {"holder", vm.holder}};
  const std::string text =
      nlohmann::json{{"format", "tandem-witness"}, {"version", 1}, {"vms", vms}}.dump(1) + "\n";
  // Durable before a GRANT of the new term leaves.
  return env->WriteFileAtomically(path, text, 0600).WithContext("witness: save state");
}

}  // namespace tandem::heartbeat
