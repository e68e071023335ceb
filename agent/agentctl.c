/* agentctl.c: the operator's command line. */
int main(void) { return 0; }
