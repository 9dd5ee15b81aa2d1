// The exec channel's codec (see guest_protocol.h): frames and the JSON
// bodies of kOpen and kExit. The guest agent links this file statically, so
// it uses the standard library and nlohmann/json only.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

void put_u32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
}

uint32_t get_u32(const char* bytes) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

bool known_type(uint8_t type) {
  return type >= static_cast<uint8_t>(FrameType::kHello) && type <= static_cast<uint8_t>(FrameType::kAck);
}

// A JSON object from a payload, or why not.
std::expected<nlohmann::json, std::string> object_of(std::string_view payload, std::string_view what) {
  auto json = nlohmann::json::parse(payload, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return std::unexpected(std::string(what) + ": not a JSON object");
  return json;
}

template <class T>
bool take(const nlohmann::json& object, const char* key, T& out) {
  auto it = object.find(key);
  if (it == object.end()) return true;
  try {
    out = it->get<T>();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace

std::string encode_frame(uint32_t session, FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderSize + payload.size());
  put_u32(out, static_cast<uint32_t>(payload.size()));
  put_u32(out, session);
  out += static_cast<char>(type);
  out += payload;
  return out;
}

std::string encode_ack(uint32_t bytes) {
  std::string payload;
  put_u32(payload, bytes);
  return encode_frame(0, FrameType::kAck, payload);
}

std::optional<uint32_t> decode_ack(std::string_view payload) {
  if (payload.size() != 4) return std::nullopt;
  return get_u32(payload.data());
}

void FrameDecoder::feed(std::string_view bytes) {
  if (!error_.empty()) return;
  // Drop what was consumed before the buffer grows, so that a long stream
  // of frames keeps it small.
  if (start_ > 0 && start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > (1u << 20)) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(bytes);
}

std::expected<std::optional<Frame>, std::string> FrameDecoder::next() {
  if (!error_.empty()) return std::unexpected(error_);
  if (buffered() < kFrameHeaderSize) return std::nullopt;
  const char* header = buffer_.data() + start_;
  uint32_t length = get_u32(header);
  uint8_t type = static_cast<uint8_t>(header[8]);
  if (length > kMaxFramePayload) {
    error_ = "a frame of " + std::to_string(length) + " bytes, over the " + std::to_string(kMaxFramePayload) +
             " a frame may carry";
    return std::unexpected(error_);
  }
  if (!known_type(type)) {
    error_ = "a frame of unknown type " + std::to_string(type);
    return std::unexpected(error_);
  }
  if (buffered() < kFrameHeaderSize + length) return std::nullopt;
  Frame frame{get_u32(header + 4), static_cast<FrameType>(type), buffer_.substr(start_ + kFrameHeaderSize, length)};
  start_ += kFrameHeaderSize + length;
  return frame;
}

std::string encode_exec_request(const ExecRequest& request) {
  return nlohmann::json{{"argv", request.argv},       {"env", request.env},   {"user", request.user},
                        {"workdir", request.workdir}, {"tty", request.tty},   {"rows", request.rows},
                        {"cols", request.cols},       {"timeout", request.timeout_seconds}}
      .dump();
}

std::expected<ExecRequest, std::string> decode_exec_request(std::string_view payload) {
  auto json = object_of(payload, "exec request");
  if (!json) return std::unexpected(json.error());
  ExecRequest request;
  if (!take(*json, "argv", request.argv) || !take(*json, "env", request.env) || !take(*json, "user", request.user) ||
      !take(*json, "workdir", request.workdir) || !take(*json, "tty", request.tty) ||
      !take(*json, "rows", request.rows) || !take(*json, "cols", request.cols) ||
      !take(*json, "timeout", request.timeout_seconds))
    return std::unexpected("exec request: a field of the wrong type");
  if (request.argv.empty() || request.argv[0].empty()) return std::unexpected("exec request: no command");
  for (const std::string& word : request.argv)
    if (word.find('\0') != std::string::npos) return std::unexpected("exec request: a NUL byte in the command");
  for (const std::string& entry : request.env)
    if (entry.find('=') == std::string::npos || entry.front() == '=' || entry.find('\0') != std::string::npos)
      return std::unexpected("exec request: environment entry \"" + entry + "\" is not NAME=VALUE");
  if (request.user.empty()) return std::unexpected("exec request: no user");
  return request;
}

std::string encode_exec_exit(const ExecExit& exit) {
  return nlohmann::json{{"code", exit.code}, {"signal", exit.signal}, {"timed_out", exit.timed_out}}.dump();
}

std::expected<ExecExit, std::string> decode_exec_exit(std::string_view payload) {
  auto json = object_of(payload, "exit report");
  if (!json) return std::unexpected(json.error());
  ExecExit exit;
  if (!take(*json, "code", exit.code) || !take(*json, "signal", exit.signal) ||
      !take(*json, "timed_out", exit.timed_out))
    return std::unexpected("exit report: a field of the wrong type");
  if (exit.code < 0 || exit.code > 255 || exit.signal < 0 || exit.signal > 64)
    return std::unexpected("exit report: code or signal out of range");
  return exit;
}

int shell_exit_code(const ExecExit& exit) { return exit.signal ? 128 + exit.signal : exit.code; }

std::optional<std::string> agent_channel_from_dmi(std::string_view table) {
  constexpr uint8_t kOemStrings = 11, kEndOfTable = 127;
  size_t at = 0;
  while (at + 4 <= table.size()) {
    auto type = static_cast<uint8_t>(table[at]);
    auto length = static_cast<uint8_t>(table[at + 1]);
    if (length < 4 || at + length > table.size()) return std::nullopt;
    // The structure's strings follow its formatted area, each ended by a
    // NUL, the set by a second one.
    size_t strings = at + length;
    size_t end = table.find(std::string_view("\0\0", 2), strings);
    if (end == std::string_view::npos) return std::nullopt;
    if (type == kOemStrings) {
      for (size_t start = strings; start < end;) {
        size_t stop = table.find('\0', start);
        std::string_view text = table.substr(start, stop - start);
        if (text.starts_with(kAgentArgument)) return std::string(text.substr(kAgentArgument.size()));
        start = stop + 1;
      }
    }
    if (type == kEndOfTable) return std::nullopt;
    at = end + 2;
  }
  return std::nullopt;
}

}  // namespace kiln
