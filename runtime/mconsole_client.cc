#include "runtime/mconsole_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace kiln {
namespace {

// The wire format of arch/um/include/shared/mconsole.h.
constexpr uint32_t kMagic = 0xcafebabe;
constexpr uint32_t kVersion = 2;
constexpr size_t kMaxData = 512;

struct Request {
  uint32_t magic;
  uint32_t version;
  uint32_t len;
  char data[kMaxData];
};

struct Reply {
  uint32_t err;
  uint32_t more;
  uint32_t len;
  char data[kMaxData];
};

}  // namespace

Result<std::string> MconsoleClient::command(const std::string& text, std::chrono::milliseconds timeout) const {
  std::string name = socket_.string();
  if (text.size() >= kMaxData) return fail(ErrorKind::kBadInput, "mconsole command too long");
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("socket", name, errno);
  // An autobound abstract address, so the kernel has somewhere to reply.
  sa_family_t family = AF_UNIX;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&family), sizeof family) != 0)
    return fail_errno("bind", name, errno);
  sockaddr_un target{};
  target.sun_family = AF_UNIX;
  if (name.size() >= sizeof target.sun_path) return fail(ErrorKind::kFailed, "{}: socket path too long", name);
  std::memcpy(target.sun_path, name.c_str(), name.size() + 1);

  Request request{};
  request.magic = kMagic;
  request.version = kVersion;
  request.len = static_cast<uint32_t>(text.size());
  std::memcpy(request.data, text.data(), text.size());
  // The whole structure, as uml_mconsole sends it: the kernel sizes some
  // replies (log) from the datagram's length, not from `len`.
  if (::sendto(fd.get(), &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&target), sizeof target) < 0)
    return fail_errno("the UML management console does not answer", name, errno);

  std::string out;
  while (true) {
    pollfd p{fd.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready <= 0) return fail(ErrorKind::kFailed, "{}: no reply to \"{}\" from the UML kernel", name, text);
    Reply reply{};
    ssize_t n = ::recv(fd.get(), &reply, sizeof reply, 0);
    if (n < static_cast<ssize_t>(offsetof(Reply, data))) return fail_errno("recv", name, errno);
    out.append(reply.data, std::min<size_t>(reply.len, kMaxData));
    if (reply.err) return fail(ErrorKind::kFailed, "UML refused \"{}\": {}", text, out);
    if (!reply.more) return out;
  }
}

}  // namespace kiln
