/* STUB: replaced by the module's owner. */
#include "config.h"
extern int postern_stub_local_maildir;
