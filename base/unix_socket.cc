#include "base/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace kiln {
namespace {

Result<sockaddr_un> address_of(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof address.sun_path)
    return fail(ErrorKind::kFailed, "{}: socket path too long", path.string());
  std::memcpy(address.sun_path, path.c_str(), path.string().size() + 1);
  return address;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::filesystem::path& path) {
  KILN_ASSIGN(sockaddr_un address, address_of(path));
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail_errno("socket", path.string(), errno);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return fail_errno("bind", path.string(), errno);
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 16) != 0) return fail_errno("listen", path.string(), errno);
  return fd;
}

Result<UniqueFd> connect_unix(const std::filesystem::path& path) {
  KILN_ASSIGN(sockaddr_un address, address_of(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("socket", path.string(), errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return fail_errno("cannot connect", path.string(), errno);
  return fd;
}

}  // namespace kiln
