#include "formats/disk/loop_device.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace kiln {
namespace {

// Another process may take the free device between asking and configuring.
constexpr int kAttempts = 16;

std::unexpected<Error> no_loop_devices(int err) {
  return fail(ErrorKind::kMissingTool,
              "cannot get a loop device from /dev/loop-control ({}): the lvm layout needs one to run lvm2's tools; "
              "run kiln as root on a host with loop devices (modprobe loop), or use storage.layout = \"gpt\"",
              std::strerror(err));
}

}  // namespace

Result<LoopDevice> LoopDevice::attach(const std::filesystem::path& image, uint64_t offset, uint64_t size) {
  KILN_ASSIGN(UniqueFd backing, open_file(image, O_RDWR | O_CLOEXEC));
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return no_loop_devices(errno);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return no_loop_devices(errno);
    std::string path = "/dev/loop" + std::to_string(number);
    UniqueFd device(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!device) return fail_errno("cannot open", path, errno);
    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.info.lo_offset = offset;
    config.info.lo_sizelimit = size;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    std::string name = image.filename().string().substr(0, LO_NAME_SIZE - 1);
    std::memcpy(config.info.lo_file_name, name.data(), name.size());
    if (::ioctl(device.get(), LOOP_CONFIGURE, &config) == 0) return LoopDevice(std::move(path), std::move(device));
    if (errno != EBUSY) return fail_errno("cannot attach " + image.string() + " to", path, errno);
  }
  return fail(ErrorKind::kFailed, "no free loop device after {} attempts: other programs keep taking them", kAttempts);
}

Result<> LoopDevice::detach() {
  if (!fd_) return {};
  // What the tools wrote through the device reaches the file first.
  if (::fsync(fd_.get()) != 0) return fail_errno("cannot flush", path_, errno);
  int rc = ::ioctl(fd_.get(), LOOP_CLR_FD, 0);
  int err = errno;
  fd_ = UniqueFd();
  // ENXIO: already detached (autoclear got there first).
  if (rc != 0 && err != ENXIO) return fail_errno("cannot detach", path_, err);
  return {};
}

LoopDevice::~LoopDevice() { (void)detach(); }

}  // namespace kiln
