// Offline user management, as useradd would do it.
#include "builder/account_files.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

AccountFiles sample() {
  AccountFiles files;
  files.passwd = ColonFile::parse("root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n");
  files.group = ColonFile::parse("root:x:0:\nsudo:x:27:\nbob:x:1000:\nadm:x:4:syslog\n");
  files.shadow = ColonFile::parse("root:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\n");
  files.gshadow = ColonFile::parse("root:*::\nsudo:*::\nbob:!::\nadm:*::syslog\n");
  files.days_since_epoch = 19675;
  return files;
}

TEST(AccountFiles, NewUserGetsTheFirstFreeIdAndAPrivateGroup) {
  AccountFiles files = sample();
  auto ids = files.add_user({"alice", std::nullopt, "Alice", "/home/alice", "/bin/bash", "*", {"sudo", "adm"}});
  ASSERT_TRUE(ids) << ids.error().to_string();
  EXPECT_EQ(ids->first, 1001u);
  EXPECT_EQ(ids->second, 1001u);
  EXPECT_EQ(files.passwd.to_string(),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n"
            "alice:x:1001:1001:Alice:/home/alice:/bin/bash\n");
  EXPECT_EQ(files.group.to_string(), "root:x:0:\nsudo:x:27:alice\nbob:x:1000:\nadm:x:4:syslog,alice\nalice:x:1001:\n");
  EXPECT_EQ(files.shadow.to_string(),
            "root:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\nalice:*:19675:0:99999:7:::\n");
  EXPECT_EQ(files.gshadow.to_string(), "root:*::\nsudo:*::alice\nbob:!::\nadm:*::syslog,alice\nalice:!::\n");
}

TEST(AccountFiles, RefusesTakenNamesIdsAndMissingGroups) {
  AccountFiles files = sample();
  EXPECT_FALSE(files.add_user({"bob", std::nullopt, "", "/home/bob", "/bin/sh", "*", {}}));
  EXPECT_FALSE(files.add_user({"carol", 1000, "", "/home/carol", "/bin/sh", "*", {}}));
  auto missing = files.add_user({"dave", std::nullopt, "", "/home/dave", "/bin/sh", "*", {"docker"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "group docker does not exist in the image");
}

TEST(AccountFiles, SetPasswordUpdatesHashAndChangeDate) {
  AccountFiles files = sample();
  ASSERT_TRUE(files.set_password("root", "$y$j9T$salt$hash"));
  EXPECT_EQ(*files.shadow.find("root"),
            (std::vector<std::string>{"root", "$y$j9T$salt$hash", "19675", "0", "99999", "7", "", "", ""}));
  EXPECT_FALSE(files.set_password("nobody-here", "x"));
}

TEST(AccountFiles, ResolvesOwnersByNameOrNumber) {
  AccountFiles files = sample();
  EXPECT_EQ(*files.resolve_owner("bob"), (std::pair<uint32_t, uint32_t>{1000, 1000}));
  EXPECT_EQ(*files.resolve_owner("bob:adm"), (std::pair<uint32_t, uint32_t>{1000, 4}));
  EXPECT_EQ(*files.resolve_owner("33:44"), (std::pair<uint32_t, uint32_t>{33, 44}));
  EXPECT_FALSE(files.resolve_owner("ghost"));
  EXPECT_FALSE(files.resolve_owner("bob:ghosts"));
}

}  // namespace
}  // namespace kiln
