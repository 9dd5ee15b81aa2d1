// Fuzzes the exec channel's frame decoder and the JSON bodies it carries,
// fed in pieces of every size the input's first byte picks. Beyond "no
// crash": a decoder that failed stays failed, every frame it gives back
// re-encodes to the very bytes it came from, and a request or exit report
// that decodes encodes and decodes to itself.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "formats/image/guest_protocol.h"

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void check_bodies(const kiln::Frame& frame) {
  if (auto request = kiln::decode_exec_request(frame.payload)) {
    auto again = kiln::decode_exec_request(kiln::encode_exec_request(*request));
    check(again && *again == *request, "an exec request survives encoding");
  }
  if (auto exit = kiln::decode_exec_exit(frame.payload)) {
    auto again = kiln::decode_exec_exit(kiln::encode_exec_exit(*exit));
    check(again && *again == *exit, "an exit report survives encoding");
    int code = kiln::shell_exit_code(*exit);
    check(code >= 0 && code <= 255 + 128, "a shell exit code in range");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t piece = 1 + data[0] % 64;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  kiln::FrameDecoder decoder;
  std::string consumed;
  bool failed = false;
  for (size_t at = 0; at < stream.size(); at += piece) {
    decoder.feed(stream.substr(at, piece));
    while (true) {
      auto frame = decoder.next();
      if (!frame) {
        failed = true;
        check(!frame.error().empty(), "a decoder error says what is wrong");
        break;
      }
      check(!failed, "a failed decoder stays failed");
      if (!*frame) break;
      check((*frame)->payload.size() <= kiln::kMaxFramePayload, "no frame over the limit");
      consumed += kiln::encode_frame((*frame)->session, (*frame)->type, (*frame)->payload);
      check_bodies(**frame);
    }
    if (failed) {
      check(!decoder.next().has_value(), "a failed decoder stays failed");
      break;
    }
  }
  check(stream.substr(0, consumed.size()) == consumed, "frames re-encode to the bytes they came from");
  return 0;
}
