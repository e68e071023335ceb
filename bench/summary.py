"""summary: one line per headline figure, which bench/run collects into
the closing table. A benchmark prints its figures as it likes, and for
each headline one line

    SUMMARY|<figure>|<value>|<settings>

through figure() below."""


def figure(name, value, settings):
    """Prints one headline figure for bench/run's table."""
    clean = [str(x).replace("|", "/").replace("\n", " ")
             for x in (name, value, settings)]
    print("SUMMARY|" + "|".join(clean), flush=True)
