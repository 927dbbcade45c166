import sys

from deqode.book.build import main

sys.exit(main())
