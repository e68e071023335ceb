/* pause.c: the process of a pod sandbox, as the kubelet's pause image
 * runs it: PID 1 of the pod's namespaces, which holds them while the
 * containers come and go, reaps the orphans a shared PID namespace hands
 * it, and leaves on SIGINT or SIGTERM. Built statically by scripts/k8s
 * into the local image pglease-pause (no image can be pulled here). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
        (void) sig;
        _exit(0);
}

static void on_child(int sig) {
        int saved = errno;

        (void) sig;
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        errno = saved;
}

int main(int argc, char **argv) {
        struct sigaction term = { .sa_handler = on_term }, child = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART };

        if (argc > 1 && strcmp(argv[1], "-v") == 0) {
                puts("pglease-pause 1");
                return 0;
        }
        if (getpid() != 1)
                fputs("pause: not PID 1: orphans of this namespace are not reaped here\n", stderr);
        if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
            sigaction(SIGCHLD, &child, NULL) < 0) {
                perror("pause: sigaction");
                return 1;
        }
        for (;;)
                pause();
}
