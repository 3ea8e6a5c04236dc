# Thin shortcuts: each target is one nox session (or docker build + run). GILFREE_PROFILE=latest make study
# uses the `latest` locks; options go through ARGS, e.g. make study ARGS="-- --duration 10s".
IMAGE ?= gilfree
ARGS ?=

.PHONY: study tables test docker

study:
	nox $(ARGS)

tables:
	nox -s tables $(ARGS)

test:
	nox -s tests $(ARGS)

docker:
	docker build -t $(IMAGE) .
	mkdir -p results
	docker run --rm -v "$(CURDIR)/results:/gilfree/results" $(IMAGE) $(ARGS)
