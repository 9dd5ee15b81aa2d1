// The host that qemu's migration stream goes to is the one `--to` names.
#include "runtime/libvirt_migration.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(LibvirtUriHost, IsTheHostPartWithoutUserPortPathOrQuery) {
  EXPECT_EQ(libvirt_uri_host("qemu+ssh://root@host2/system"), "host2");
  EXPECT_EQ(libvirt_uri_host("qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k&command=/s"), "127.0.0.1");
  EXPECT_EQ(libvirt_uri_host("qemu+tcp://host3:16509/system"), "host3");
  EXPECT_EQ(libvirt_uri_host("qemu+ssh://host4?no_tty=1"), "host4");
  EXPECT_EQ(libvirt_uri_host("qemu+ssh://root@[fd00::2]:22/system"), "fd00::2");
}

TEST(LibvirtUriHost, IsEmptyForALocalUri) {
  EXPECT_EQ(libvirt_uri_host("qemu:///system"), "");
  EXPECT_EQ(libvirt_uri_host("qemu:///session"), "");
  EXPECT_EQ(libvirt_uri_host("not a uri"), "");
}

}  // namespace
}  // namespace kiln
