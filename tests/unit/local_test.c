/* STUB: replaced by the module's owner.  Exit 77 = skipped. */
int main(void) { return 77; }
