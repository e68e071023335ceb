/* pglease-agent.c: the daemon and its init / run-postgres modes. */
#include <stdio.h>
int main(void) { return 0; }
