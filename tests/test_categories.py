"Attributes the article type decides: the table from labels and the zero-shot map, p(value) as a sum, the way kept."
import csv

import numpy as np
import pandas as pd
import pytest

from fashion_fastai.answering import categories as cat
from fashion_fastai.answering.zero_shot import TABLE, load_categories
from fashion_fastai.core.errors import DataError
from helpers import REAL_DATA


def test_the_table_takes_each_article_types_most_frequent_value_then_the_maps():
    rows = pd.DataFrame({'articleType': ['Tshirts'] * 3 + ['Ties'] * 2 + ['Ties'],
                         'masterCategory': ['Apparel'] * 3 + ['Accessories', 'Accessories', 'Apparel'],
                         'subCategory': ['Topwear'] * 3 + ['Ties', 'Ties', 'Topwear']})
    table = cat.category_table(rows, {'Lipstick': {'masterCategory': 'Personal Care', 'subCategory': 'Lips'},
                                      'Ties': {'masterCategory': 'Nope'}})
    assert table['masterCategory'] == {'Tshirts': 'Apparel', 'Ties': 'Accessories', 'Lipstick': 'Personal Care'}
    assert table['subCategory'] == {'Tshirts': 'Topwear', 'Ties': 'Ties', 'Lipstick': 'Lips'}  # labels first


def test_every_zero_shot_row_names_its_categories():
    found = load_categories()
    with open(TABLE, newline='', encoding='utf-8') as f: names = [r['articleType'] for r in csv.DictReader(f)]
    assert set(found) == set(names) and all(set(v) == set(cat.DECIDED) for v in found.values())
    if (REAL_DATA / 'styles.csv').is_file():  # the values are the data set's own names
        styles = pd.read_csv(REAL_DATA / 'styles.csv', on_bad_lines='skip', usecols=list(cat.DECIDED))
        for a in cat.DECIDED: assert {v[a] for v in found.values()} <= set(styles[a].dropna())


def test_a_map_value_the_data_lacks_is_refused_naming_the_row():
    with pytest.raises(DataError, match=r"'Lipstick' gives subCategory 'Lip'.*did you mean 'Lips'"):
        cat.check_values({'Lipstick': {'subCategory': 'Lip'}}, {'subCategory': {'Lips', 'Topwear'}}, 'map.csv')


def test_values_are_sums_of_article_types_and_the_answer_is_the_article_types_value():
    vocab, head = ['Tshirts', 'Shirts', 'Watches', 'Nail Polish'], ['Accessories', 'Apparel', 'Footwear']
    of = cat.value_index({'Tshirts': 'Apparel', 'Shirts': 'Apparel', 'Watches': 'Accessories'}, vocab, head)
    assert of == [1, 1, 0, -1]
    label = np.array([[.3, .3, .4, 0.], [.1, .1, .6, .2], [.4, 0., 0., .6]])
    p = cat.marginal(label, of, 3)
    assert np.allclose(p, [[.4, .6, 0], [.75, .25, 0], [0, 1, 0]])  # Nail Polish has no value: renormalised without
    # the top article type is Watches although Apparel has more mass: the answer agrees with the article type
    assert list(cat.answer_index(cat.ARTICLE_TYPE, p, label, of)) == [0, 0, 1]
    heads = np.array([[.1, .8, .1], [.2, .7, .1], [.1, .1, .8]])
    assert list(cat.answer_index(cat.HEADS, heads, label, of)) == [1, 1, 2]
    product = cat.attribute_probs(cat.PRODUCT, heads, label, of)
    assert np.allclose(product.sum(1), 1) and np.allclose(product[0], [.04, .48, 0] / np.float64(.52))


def test_the_way_kept_is_the_most_accurate_of_the_consistent_ones():
    vocab, head = ['Tshirts', 'Watches'], ['Accessories', 'Apparel']
    of = cat.value_index({'Tshirts': 'Apparel', 'Watches': 'Accessories'}, vocab, head)
    label = np.array([[.9, .1]] * 50 + [[.2, .8]] * 50)
    truth = np.array([1] * 50 + [0] * 50)
    right_heads = np.eye(2)[truth] * .9 + .05
    measured = cat.measure(right_heads, label, of, truth)
    assert measured[cat.HEADS] == {'top1': 1., 'consistent': 1.} and cat.choose(measured) == cat.HEADS
    wrong = right_heads.copy(); wrong[:3] = wrong[:3, ::-1]  # 3% of the heads' answers contradict the article type
    measured = cat.measure(wrong, label, of, truth)
    assert measured[cat.HEADS]['consistent'] == pytest.approx(.97) and cat.choose(measured) != cat.HEADS
    assert measured[cat.ARTICLE_TYPE]['consistent'] == 1.
    unlabelled = truth.copy(); unlabelled[:10] = -100  # photos without the attribute: out of top-1, not of agreement
    assert cat.measure(right_heads, label, of, unlabelled)[cat.HEADS]['top1'] == 1.
