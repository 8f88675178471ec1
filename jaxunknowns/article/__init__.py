"""The article page: every question of "What we still don't understand about
machine learning" answered by a live run (`configs/article.py`).

* `outline`    the article's questions and claims, one stage each;
* `experiment` the `article` experiment: plans, runs and resumes the stages;
* `page`       ARTICLE.md and the self-contained article.html, from the
               stages' own reports (their page.json).
"""
