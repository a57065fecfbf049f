/* STUB: replaced by the module's owner. */
#include "config.h"
int main(void) { return 1; }
